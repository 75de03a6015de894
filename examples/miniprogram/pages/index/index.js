// Shows who wxunion says this person is, and binds their phone number on request.
const wxunion = require('../../utils/wxunion.js');

const ME = `{
  me {
    id unionId
    identities { appId appKind openId }
    phoneNumber { phoneNumber }
  }
}`;

const BIND_PHONE = `mutation($code: String!) {
  bindPhoneNumber(code: $code) { id phoneNumber { phoneNumber purePhoneNumber countryCode } }
}`;

Page({
  data: { me: null, error: '' },

  onShow() {
    wxunion
      .call(ME)
      .then((data) => this.setData({ me: data.me, error: '' }))
      .catch((err) => this.setData({ error: `${err.code}: ${err.message}` }));
  },

  // <button open-type="getPhoneNumber" bindgetphonenumber="onGetPhoneNumber">: WeChat asks the
  // person, then hands over a one-time code (not the number). wxunion exchanges it with
  // wxa/business/getuserphonenumber on the server; the mini program never sees a secret.
  onGetPhoneNumber(e) {
    if (!e.detail.code) {
      // The person declined (e.detail.errMsg says so), or the account may not use the API.
      return;
    }
    wxunion
      .call(BIND_PHONE, { code: e.detail.code })
      .then((data) => this.setData({ me: Object.assign({}, this.data.me, data.bindPhoneNumber) }))
      .catch((err) => this.setData({ error: `${err.code}: ${err.message}` }));
  },
});
